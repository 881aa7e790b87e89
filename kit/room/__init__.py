"""Preparing a room: offline packs of models and wheels (docs/classroom.md).

pack        build a pack and read its manifest
install     install a pack from a folder or an address, verified
serve       serve a pack folder on the local network
wheelhouse  the Python packages a pack carries
"""
