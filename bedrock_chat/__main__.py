"""``python -m bedrock_chat``: the same as the ``bedrock-chat`` command."""

from __future__ import annotations

from ._cli.main import main

raise SystemExit(main())
