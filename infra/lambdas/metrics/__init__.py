"""The metrics Lambda: publishes a finished job's quality metrics (``metrics.handler.handler``).

Layers, each importing only those below it: ``settings`` (environment) <- ``outcome`` (the event, completed from
DescribeProcessingJob) <- ``datapoints`` (summary -> datapoints) <- ``notifications`` (SNS) and ``s3io`` (metrics.json,
markers, baseline) <- ``publication`` (one event, clients injected) <- ``handler`` (the entry).
"""
