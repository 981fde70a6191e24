"""Evaluation, one home for every score, below training, ROS and the CLIs (arrows point down, test/test_layering.py):
``metrics`` (AbsRel, δ1, RMSE; the log and depth alignments; the NYUv2/KITTI protocols), ``fusion`` (LiDAR fusion
and metric sources on synthetic scenes), ``completion`` (the completion model beside the plain model and the
classical baselines), ``benchmark`` (per-stage latency and FLOPs)."""
