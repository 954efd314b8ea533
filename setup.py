"""Package discovery, the one thing pyproject.toml cannot say: the `workyard` package
lives in core/ and `workyard.sim` in sim/, and every package below them must ship."""

from setuptools import find_packages, setup


def packages_under(directory: str, name: str) -> dict[str, str]:
    found = {name: directory}
    for sub in find_packages(directory):
        found[f"{name}.{sub}"] = f"{directory}/{sub.replace('.', '/')}"
    return found


package_dir = {**packages_under("core", "workyard"), **packages_under("sim", "workyard.sim")}
setup(packages=sorted(package_dir), package_dir=package_dir)
