"""The chat side: one module per thing a person meets in the Chainlit UI.

turn (a chat answer), wallet (the badge, the welcome bonus, low balance, not enough credits),
picker (the model picker), statement (/usage and receipts), signins (/signins, /password), admin
(/grant, /adjust, /disable, /enable, /logout, /invite), menu (the commands, and who may use which),
metered (the chat side of every piece of metered work), errors (the one place errors become chat
text). `app.py` registers Chainlit's callbacks and calls into these; `Deployment` carries what they
run on.
"""
