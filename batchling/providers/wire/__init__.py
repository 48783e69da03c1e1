"""Pure encoders and decoders that several providers share: content parts, text inputs and
OpenAI's chat/responses line format. No I/O, no vendor SDK."""
