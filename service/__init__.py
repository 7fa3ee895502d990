"""memotion's HTTP gateway: serves the models of an exported model repository (see
``memotion.manifest``). Entry points: ``service.api.app.create_app``, ``service.server.serve``,
``service.classify_file.classify_file``."""
