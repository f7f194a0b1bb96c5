"""Long tasks in the background: runs claimed by a worker under a lease (`worker`), carried out
through the task graph (`carry`), each model and tool call metered (`steps`), with the person's
files kept where every replica finds them (`files`). Nothing here knows of the chat: it tells a
person's open chats through the callback it is given."""
