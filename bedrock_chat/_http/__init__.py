"""The one I/O boundary: the HTTP engines, credentials, signing and the retry loop.

Foreign exceptions (httpx's, aiohttp's, botocore's) are translated into bedrock_chat's here and
nowhere else.
"""
