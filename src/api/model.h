/* Internal access from the pipeline and CLI to what a public model handle holds. */
#ifndef OTL_MODEL_H
#define OTL_MODEL_H

#include "ir.h"
#include "onnxtl.h"

const otl_graph *onnxtl_model_graph(const onnxtl_model *m);

#endif
