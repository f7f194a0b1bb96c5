"""The baseline of bench/turns.py: a bare Chainlit app relaying an OpenAI-compatible server.

Nothing else: no login, no persistence, no memory, no metering. Each answer streams token by token
into one message, the way Chainlit's own examples relay a model. bench/turns.py runs it from a
temporary folder (Chainlit writes its default config beside the script it runs).
"""

import os

import chainlit as cl
from openai import AsyncOpenAI

client = AsyncOpenAI(base_url=os.environ["BARE_BASE_URL"], api_key="none")


@cl.on_chat_start
async def start() -> None:
    cl.user_session.set("started", True)


@cl.on_message
async def relay(message: cl.Message) -> None:
    answer = cl.Message(content="")
    stream = await client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": message.content}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            await answer.stream_token(chunk.choices[0].delta.content)
    await answer.send()
