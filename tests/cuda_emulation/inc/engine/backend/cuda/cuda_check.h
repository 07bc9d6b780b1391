#pragma once
#define BM_CUDA_CHECK_LAUNCH() \
  do {                         \
  } while (0)
#define BM_CUDA_CHECK(x) \
  do {                   \
    (void)(x);           \
  } while (0)
