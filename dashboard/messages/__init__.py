"""The dashboard's messages, one module per part: MESSAGES = {key: (English, Khmer)}."""
