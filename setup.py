"""Maps the architecture's folders (server/, satellite/) to namespaced imports.

`server/session` installs as `hearth.server.session`, so nothing lands in
site-packages under a bare `server` or `satellite` name.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["hearth", "hearth.*"])
for folder in ("server", "satellite"):
    packages += [f"hearth.{name}" for name in find_packages(include=[folder, f"{folder}.*"])]

setup(packages=packages)
