"""The trigger Lambda: one SageMaker Processing job per uploaded object version (``trigger.handler.handler``).

Layers, each importing only those below it: ``settings`` (environment) <- ``events`` (the SQS/EventBridge message)
<- ``request`` (the CreateProcessingJob request) <- ``staging`` (S3: which key, the staged copy, the baseline) <-
``refusals`` (KeyRefused + alert) <- ``batch`` (one SQS batch, clients injected) <- ``handler`` (the entry).
"""
