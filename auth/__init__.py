"""Who may log in: password accounts for self-hosting (OAuth is configured through Chainlit)."""
