"""Evaluation, one home for every score, below training, ROS and the CLIs (arrows point down, test/test_layering.py):
``metrics`` (AbsRel, δ1, RMSE; the log and depth alignments; the NYUv2/KITTI protocols), ``scoring`` (a predictor
scored over a dataset), ``prior`` (the mean-depth prior), ``steps`` (AbsRel and δ1 against NFE), ``fusion``
(LiDAR fusion and metric sources on synthetic scenes), ``completion`` (the completion model beside the plain model
and the classical baselines), ``benchmark`` (per-stage latency and FLOPs) and ``bench_report`` (its tables, CSVs
and plot)."""
