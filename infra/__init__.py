"""CDK constructs and the stack that composes them (imports only the runtime's config models)."""
