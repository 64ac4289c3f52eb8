"""Model families: the adapter table, loading, tiny offline instances and the organism."""
