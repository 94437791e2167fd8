// A CPU emulation of the part of CUDA that ops_cuda.cu uses, so that its kernels run, unchanged, on
// CPU tensors in the tests (tests/motion/test_ops_cuda_emulated.py). Not a general CUDA emulator.
//
// Every CUDA thread of a block is a fiber with its own stack (started with makecontext, then
// switched with _setjmp/_longjmp, which skip the signal-mask system calls of swapcontext); a
// scheduler runs them one at a time until each finishes or waits at a barrier: __syncthreads (the
// block), or a warp shuffle (its 32 lanes exchange through double-buffered slots and one barrier). A barrier opens
// when every unfinished thread it concerns waits at it; anything else is an error CUDA would hang
// or be undefined on (a barrier or full-mask shuffle under divergent control flow, a thread that
// exited before its warp's shuffle), reported by the launch. Blocks run one after another, so
// atomicAdd is a plain add and the results are deterministic. Dynamic shared memory is filled with
// 0xFF bytes (NaN for floats) so that reads of unwritten entries show up in the results.
//
// Put this folder first on the include path: it stands in for the toolkit's cuda_runtime.h.
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#define M4D_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaError_t = int;
using cudaStream_t = void*;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;
constexpr cudaError_t cudaErrorLaunchFailure = 719;
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlock = 8 };

namespace m4d_emu {

struct Thread {
  ucontext_t context;
  jmp_buf jump;
  bool started = false;
  unsigned int shuffles = 0;  // warp shuffles done: the parity picks the half of the exchange slots
  std::vector<char> stack;
  dim3 thread_idx;
  enum State { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone } state = kRunnable;
};

struct Launch {
  dim3 grid, block_dim, block_idx;
  std::size_t shared_bytes = 0;
  std::vector<unsigned char> shared;
  std::vector<Thread> threads;
  std::vector<double> warp_slots;  // [2][warps * 32]: exchange slots per lane, wide enough for double
  std::function<void()> body;
  ucontext_t scheduler;
  jmp_buf scheduler_jump;
  int current = -1;
  std::string error;
};

inline Launch*& active() {
  static thread_local Launch* launch = nullptr;
  return launch;
}

inline cudaError_t& last_error() {
  static thread_local cudaError_t status = cudaSuccess;
  return status;
}

inline std::string& last_message() {
  static thread_local std::string message;
  return message;
}

// Shared memory per block that cudaDeviceGetAttribute reports; tests shrink it to emulate small GPUs.
inline int& shared_budget() {
  static int budget = 48 * 1024;
  return budget;
}

inline Thread& self() { return active()->threads[active()->current]; }

inline void fail(const std::string& message) {  // the calling thread stops for good; the launch reports it
  Launch* launch = active();
  if (launch->error.empty()) launch->error = message;
  self().state = Thread::kDone;
  _longjmp(launch->scheduler_jump, 1);
}

inline void wait(Thread::State state) {
  Thread& thread = self();
  thread.state = state;
  if (!_setjmp(thread.jump)) _longjmp(active()->scheduler_jump, 1);
}

inline void entry() {
  Launch* launch = active();
  launch->body();
  launch->threads[launch->current].state = Thread::kDone;
  _longjmp(launch->scheduler_jump, 1);  // never returns: the scheduler's ucontext is stale by now
}

// Opens every barrier whose threads have all arrived; false when nothing can run any more.
inline bool open_barriers(Launch& launch) {
  const int n = static_cast<int>(launch.threads.size());
  int done = 0, at_block = 0;
  for (const auto& t : launch.threads) {
    done += t.state == Thread::kDone;
    at_block += t.state == Thread::kAtBlockBarrier;
  }
  if (done == n) return false;
  bool opened = false;
  if (at_block > 0 && at_block + done == n) {
    if (done > 0) {
      launch.error = "__syncthreads() reached after " + std::to_string(done) + " thread(s) of the block exited";
      return false;
    }
    for (auto& t : launch.threads) t.state = Thread::kRunnable;
    return true;
  }
  for (int w = 0; w * 32 < n; ++w) {
    int waiting = 0, exited = 0, lanes = std::min(32, n - w * 32);
    for (int l = 0; l < lanes; ++l) {
      waiting += launch.threads[w * 32 + l].state == Thread::kAtWarpBarrier;
      exited += launch.threads[w * 32 + l].state == Thread::kDone;
    }
    if (waiting > 0 && waiting == lanes) {
      for (int l = 0; l < lanes; ++l) launch.threads[w * 32 + l].state = Thread::kRunnable;
      opened = true;
    } else if (waiting > 0 && waiting + exited == lanes) {
      launch.error = "warp " + std::to_string(w) + ": a full-mask shuffle after " + std::to_string(exited) +
                     " lane(s) exited";
      return false;
    }
  }
  if (!opened) {
    launch.error = "deadlock: threads wait at different barriers (divergent __syncthreads or warp shuffles)";
  }
  return opened;
}

inline void run_block(Launch& launch) {
  const int n = static_cast<int>(launch.block_dim.x);
  launch.shared.assign(launch.shared_bytes + 16, 0xFF);
  launch.warp_slots.assign(static_cast<std::size_t>((n + 31) / 32) * 64, 0.0);
  launch.threads.resize(n);
  for (int i = 0; i < n; ++i) {
    Thread& t = launch.threads[i];
    t.stack.resize(128 * 1024);
    t.thread_idx = dim3(i);
    t.state = Thread::kRunnable;
    t.started = false;
    t.shuffles = 0;
    getcontext(&t.context);
    t.context.uc_stack.ss_sp = t.stack.data();
    t.context.uc_stack.ss_size = t.stack.size();
    t.context.uc_link = &launch.scheduler;
    makecontext(&t.context, entry, 0);
  }
  while (launch.error.empty()) {
    bool ran = false;
    for (int i = 0; i < n && launch.error.empty(); ++i) {
      if (launch.threads[i].state != Thread::kRunnable) continue;
      launch.current = i;
      ran = true;
      Thread& t = launch.threads[i];
      if (!_setjmp(launch.scheduler_jump)) {
        if (t.started) _longjmp(t.jump, 1);
        t.started = true;
        swapcontext(&launch.scheduler, &t.context);
      }
    }
    if (!ran && !open_barriers(launch)) break;
  }
}

// kernel<<<grid, block, shared>>>(args...): every block in turn.
struct Launcher {
  dim3 grid, block;
  std::size_t shared;
  template <typename Kernel>
  auto operator()(Kernel kernel) const {
    return [grid = grid, block = block, shared = shared, kernel](auto... args) {
      Launch launch;
      launch.grid = grid;
      launch.block_dim = block;
      launch.shared_bytes = shared;
      launch.body = [&] { kernel(args...); };
      Launch* outer = active();
      active() = &launch;
      last_error() = cudaSuccess;
      if (block.x == 0 || block.x > 1024 || block.y != 1 || block.z != 1 || grid.y != 1 || grid.z != 1 ||
          shared > static_cast<std::size_t>(shared_budget())) {
        launch.error = "invalid launch configuration: " + std::to_string(block.x) + " threads, " +
                       std::to_string(shared) + " bytes of shared memory (budget " +
                       std::to_string(shared_budget()) + ")";
      }
      for (unsigned int b = 0; b < grid.x && launch.error.empty(); ++b) {
        launch.block_idx = dim3(b);
        run_block(launch);
      }
      active() = outer;
      if (!launch.error.empty()) {
        last_error() = cudaErrorLaunchFailure;
        last_message() = launch.error;
      }
    };
  }
};

template <typename T>
T shuffle(unsigned int mask, T value, int source_lane) {
  if (mask != 0xffffffffu) fail("only full-mask shuffles are emulated");
  Launch& launch = *active();
  const int tid = static_cast<int>(self().thread_idx.x), warp = tid / 32, lane = tid % 32;
  // Double buffering (all lanes shuffle in the same order): a lane writes this half again only two
  // shuffles later, after a barrier that every lane reaches only once it has read this one.
  const std::size_t half = (self().shuffles++ & 1u) * (launch.warp_slots.size() / 2);
  double* slots = launch.warp_slots.data() + half + warp * 32;
  slots[lane] = static_cast<double>(value);
  wait(Thread::kAtWarpBarrier);
  return static_cast<T>(slots[source_lane & 31]);
}

}  // namespace m4d_emu

#define threadIdx (::m4d_emu::self().thread_idx)
#define blockIdx (::m4d_emu::active()->block_idx)
#define blockDim (::m4d_emu::active()->block_dim)
#define gridDim (::m4d_emu::active()->grid)
#define M4D_LAUNCH(kernel, grid, block, shared, stream) \
  ::m4d_emu::Launcher{dim3(grid), dim3(block), static_cast<std::size_t>(shared)}(kernel)

inline void __syncthreads() { ::m4d_emu::wait(::m4d_emu::Thread::kAtBlockBarrier); }
inline void __syncwarp(unsigned int = 0xffffffffu) { ::m4d_emu::wait(::m4d_emu::Thread::kAtWarpBarrier); }
template <typename T>
T __shfl_sync(unsigned int mask, T value, int lane) {
  return ::m4d_emu::shuffle(mask, value, lane);
}
template <typename T>
T __shfl_xor_sync(unsigned int mask, T value, int offset) {
  return ::m4d_emu::shuffle(mask, value, static_cast<int>(::m4d_emu::self().thread_idx.x % 32) ^ offset);
}
template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
inline unsigned char* dynamic_shared() { return ::m4d_emu::active()->shared.data(); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline cudaError_t cudaGetLastError() {
  const cudaError_t status = ::m4d_emu::last_error();
  ::m4d_emu::last_error() = cudaSuccess;
  return status;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = ::m4d_emu::shared_budget();
  return cudaSuccess;
}
inline const char* cudaGetErrorString(cudaError_t status) {
  return status == cudaSuccess ? "no error" : ::m4d_emu::last_message().c_str();
}
