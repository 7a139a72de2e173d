"""Run by test_mace.py in a subprocess whose sys.path starts with e3nn 0.4.4: builds the pseudo-tensor MACE of
test_mace.mace_model under 0.4.4 and saves its state dict and its energies, forces and stresses.

Usage: python e3nn044_reference.py TEST_MACE_PY OUT_PT
"""

import importlib.util
import sys

import e3nn
import torch

assert e3nn.__version__ == "0.4.4", e3nn.__version__
torch.set_default_dtype(torch.float64)
spec = importlib.util.spec_from_file_location("test_mace", sys.argv[1])
test_mace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_mace)
model = test_mace.mace_model(**test_mace.PSEUDOTENSOR_2)
outputs = test_mace.mace_outputs(model, test_mace.graph(test_mace.structures(), float(model.r_max)))
torch.save({"state": model.state_dict(), "outputs": outputs}, sys.argv[2])
