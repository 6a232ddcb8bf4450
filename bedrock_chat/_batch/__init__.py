"""Batches above the client: the scheduler, the Bedrock batch-record format and batch-inference jobs."""
