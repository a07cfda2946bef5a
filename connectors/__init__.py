"""Built-in connectors, registered under the ``importer.connectors`` entry-point group."""
