"""Dataset references -> labelled images, stratified subsampling and content fingerprints
(computed once per process, :mod:`zoorank.data.identity`)."""

from zoorank.data.datasets import ImageDataset, class_sizes, list_builtin_datasets, load_dataset
from zoorank.data.identity import DatasetIdentity
from zoorank.data.refs import DatasetRef, parse_dataset_ref
from zoorank.data.subsample import class_balanced_rows, stratified_subsample

__all__ = [
    "DatasetIdentity",
    "DatasetRef",
    "ImageDataset",
    "class_balanced_rows",
    "class_sizes",
    "list_builtin_datasets",
    "load_dataset",
    "parse_dataset_ref",
    "stratified_subsample",
]
