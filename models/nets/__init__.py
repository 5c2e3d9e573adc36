"""The networks (one module each in :mod:`models.nets.architectures`, registering themselves), their
ResNet trunk, the catalog of models and their sizes, the parameter table."""
