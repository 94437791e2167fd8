// Stand-in for the toolkit header in the CPU emulation of the CUDA kernels (see cuda_runtime.h).
#pragma once
#include "cuda_runtime.h"
