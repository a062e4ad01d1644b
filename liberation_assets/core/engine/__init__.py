"""The engine: wires readers to the contract and the publisher, and runs them."""
