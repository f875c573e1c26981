"""Chat with a GGUF model: its tokenizer and ChatML template from the file's metadata, and the CLIs."""
