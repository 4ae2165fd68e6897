"""TOML profiles: reading, `extends`, validation against LLaMA-Factory's arguments, conversion."""

from lftop.profiles.launch import Launch
from lftop.profiles.problems import Problem, ProfileError
from lftop.profiles.profile import Profile, load

__all__ = ["Launch", "Problem", "Profile", "ProfileError", "load"]
