pytest_plugins = ["testbed.pytest_uml"]
