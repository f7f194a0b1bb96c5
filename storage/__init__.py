"""Where conversations and accounts are kept: the database engine, migrations, the chat history."""
