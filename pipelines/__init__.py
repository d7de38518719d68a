"""genpipe's orchestration, one subpackage per concern, top to bottom:

cli -> schedule -> cluster -> workflow -> tune -> train | evaluate -> registry -> config,
standing on models/, data_prep/ and storage/. Importing any of them changes nothing: environment
defaults are set by the entry points (the CLI, the Python API, each step's task, each worker).
"""
