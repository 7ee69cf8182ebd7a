"""The llama.cpp owner: loads one model and runs requests on it. Lives in the engine process."""
