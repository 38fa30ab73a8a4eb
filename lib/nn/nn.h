/* nn.h — all layers of lib/nn (forward/backward pairs over flat buffers).
 * Read lib/nn/linear.h first: it states the conventions every layer follows. */
#ifndef SD_NN_NN_H
#define SD_NN_NN_H

#include "backend/backend.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/conv2d.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/norm.h"
#include "nn/resample.h"
#include "nn/tensor_ops.h"

#endif
