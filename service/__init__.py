"""memotion's HTTP gateway: serves the models of an exported model repository (see
``memotion.manifest``). Entry points: ``service.app.create_app``, ``service.main.serve``,
``service.classify_cli.classify_file``."""
