"""Guest calls, grouped by area; each module pairs with the agent's module of that area."""
