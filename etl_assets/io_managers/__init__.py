"""IO managers: how an asset's output reaches the warehouse, so asset functions never open a connection."""
