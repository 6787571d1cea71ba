"""zoorank: rank a zoo of pretrained models for transfer to a labelled image dataset.

The core package is a plain library: functions over arrays, registries of scores, models and
datasets, and the ranking pipeline. It never imports the web app or the queue.
"""

__version__ = "0.1.0"
