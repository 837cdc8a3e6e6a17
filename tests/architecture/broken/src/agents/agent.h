#pragma once

// A fixture: an agent that includes config/, which the layer check must refuse.
#include "config/config.h"
