"""The guest side of guestslots: what goes into the appliance VM.

Shipped as package data (``guestslots._appliance``) and read with
:mod:`importlib.resources`; nothing here is imported by the host at run time.
``MANIFEST`` lists the files the appliance is built from (and hashed by).
"""
