# The pytester fixture tests the plugin by running whole pytest sessions; it can only be
# enabled from the rootdir's conftest.
pytest_plugins = ["pytester"]
