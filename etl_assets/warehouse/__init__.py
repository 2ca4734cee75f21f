"""How rows reach the database: the schema, partitions, engines (and, later, COPY and merge statements)."""
