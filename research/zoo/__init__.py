"""Research code (training, data generation, tables, metrics): never mounted into a sandbox, never in a unit key."""
