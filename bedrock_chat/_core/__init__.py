"""The sans-IO core: models, prompts, the protocol, SigV4, the wire codecs, configuration.

Nothing here touches a socket, a thread or the clock (time is passed in); it imports no httpx, anyio,
aiohttp or botocore. The import-linter contracts in pyproject.toml hold it to that.
"""
