"""What a decoder needs: the model, quantization, entropy coding, the container, decoding.

Imports nothing from gnerv.encoder, gnerv.evaluation or gnerv.studies.
"""
