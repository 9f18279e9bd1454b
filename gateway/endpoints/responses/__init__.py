"""``POST /v1/responses``: OpenAI's Responses API, served statelessly through the chat path.

``protocol`` holds the request models (what is honoured, ignored and refused, and why);
``translate`` turns a request into a chat-completions body and the chat answer, whole or
streamed, back into a Response object and its events.
"""
