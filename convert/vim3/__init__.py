"""The VIM3 NPU target: ONNX -> quantized NBG, the NPU library, the emulator.

target.py (the entry: run(ctx)), compilers.py (acuitylite, khadas-sdk) and compilation.py (what a compiler hands
back, the scheme -> quantizer table), toolkit_env.py / toolkit_worker.py (the toolkit's own environment),
khadas_sdk.py / khadas_pegasus_job.py (Khadas' SDK in Docker), nbg_header.py (the NBG check), npu_lib/.
"""
