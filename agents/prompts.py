"""Prompts used by the graphs."""

SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely. "
    "If you do not know something, say so."
)
