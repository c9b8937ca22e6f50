// Clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html),
// checked by -Wthread-safety in the clang builds (build-asan, build-tsan); empty elsewhere.
// Annotate what a mutex guards, and which functions need it held:
//
//   Mutex mu_;
//   int count_ GUARDED_BY(mu_);
//   void Bump() REQUIRES(mu_);
//
// The analysis only understands capability types: use util/mutex.h's Mutex, MutexLock and
// CondVar (std::mutex is not annotated in libstdc++).
#ifndef LLMASOS_UTIL_THREAD_ANNOTATIONS_H_
#define LLMASOS_UTIL_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define LLMASOS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LLMASOS_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) LLMASOS_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY LLMASOS_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) LLMASOS_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) LLMASOS_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) LLMASOS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) LLMASOS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) LLMASOS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) LLMASOS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) LLMASOS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) LLMASOS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) LLMASOS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) LLMASOS_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS LLMASOS_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // LLMASOS_UTIL_THREAD_ANNOTATIONS_H_
