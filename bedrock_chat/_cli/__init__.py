"""The ``bedrock-chat`` command line: chat, models, batch and batch jobs, and the flags they share.

The only package that starts an event loop (``anyio.run``).
"""
