"""The pure engines behind the commands: model checking, simulation, trace checking, docs, teaching."""
