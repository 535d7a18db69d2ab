/* Dense layer y = W x + b, compiled per hardware target (KERNEL_CFLAGS):
 * -mavx2 / -mavx512f / -march=armv8.2-a+dotprod let the compiler vectorise
 * the inner loop for that instruction set. */
#include <stddef.h>

void matvec(const float *restrict w, const float *restrict x, const float *restrict b,
            float *restrict y, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float acc = 0.0f;
        const float *row = w + r * cols;
        for (size_t c = 0; c < cols; c++) acc += row[c] * x[c];
        y[r] = acc + b[r];
    }
}

/* The instruction set this library was compiled for. */
const char *kernel_isa(void) {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__ARM_FEATURE_DOTPROD)
    return "neon-dotprod";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "generic";
#endif
}
