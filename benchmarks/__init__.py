"""zoorank benchmarks: ranking quality against ground truth, speed. Results under results/."""
