// Dense layer on the GPU, same C ABI as matvec.c, compiled for every arch in CUDA_ARCH_LIST.
#include <cstddef>
#include <cuda_runtime.h>

__global__ void matvec_kernel(const float *w, const float *x, const float *b, float *y, size_t rows, size_t cols) {
    size_t r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float acc = 0.0f;
    for (size_t c = 0; c < cols; c++) acc += w[r * cols + c] * x[c];
    y[r] = acc + b[r];
}

extern "C" void matvec(const float *w, const float *x, const float *b, float *y, size_t rows, size_t cols) {
    float *dw, *dx, *db, *dy;
    cudaMalloc(&dw, rows * cols * sizeof(float));
    cudaMalloc(&dx, cols * sizeof(float));
    cudaMalloc(&db, rows * sizeof(float));
    cudaMalloc(&dy, rows * sizeof(float));
    cudaMemcpy(dw, w, rows * cols * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(dx, x, cols * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, rows * sizeof(float), cudaMemcpyHostToDevice);
    matvec_kernel<<<(unsigned)((rows + 255) / 256), 256>>>(dw, dx, db, dy, rows, cols);
    cudaMemcpy(y, dy, rows * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(dw); cudaFree(dx); cudaFree(db); cudaFree(dy);
}

extern "C" const char *kernel_isa(void) { return "cuda"; }

/* How many GPUs the CUDA runtime sees (0 when none or no driver): the server refuses to start on 0. */
extern "C" int kernel_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
    return count;
}
