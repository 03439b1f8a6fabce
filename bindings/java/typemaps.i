/* Java: arrays cross as Java arrays (float[], int[], long[]), pinned or copied by the JVM
 * for the call; null is an absent array. Inputs are released without copying back,
 * outputs with. */
%define SWB_JAVA_ARRAY(CTYPE, NAME, JNITYPE, JTYPE, JELEM, GET, RELEASE, MODE)
%typemap(jni) (CTYPE* NAME, size_t LEN) "JNITYPE"
%typemap(jtype) (CTYPE* NAME, size_t LEN) "JTYPE"
%typemap(jstype) (CTYPE* NAME, size_t LEN) "JTYPE"
%typemap(javain) (CTYPE* NAME, size_t LEN) "$javainput"
%typemap(in) (CTYPE* NAME, size_t LEN) {
  $1 = NULL;
  $2 = 0;
  if ($input) {
    $1 = ($1_ltype)JCALL2(GET, jenv, $input, 0);
    if (!$1) return $null; /* the JVM has thrown OutOfMemoryError */
    $2 = (size_t)JCALL1(GetArrayLength, jenv, $input);
  }
}
%typemap(freearg) (CTYPE* NAME, size_t LEN) {
  if ($1) JCALL3(RELEASE, jenv, $input, (JELEM*)$1, MODE);
}
%enddef

SWB_JAVA_ARRAY(float, OUT_F32, jfloatArray, float[], jfloat, GetFloatArrayElements,
               ReleaseFloatArrayElements, 0)
SWB_JAVA_ARRAY(const float, IN_F32, jfloatArray, float[], jfloat, GetFloatArrayElements,
               ReleaseFloatArrayElements, JNI_ABORT)
SWB_JAVA_ARRAY(const int32_t, IN_I32, jintArray, int[], jint, GetIntArrayElements,
               ReleaseIntArrayElements, JNI_ABORT)
SWB_JAVA_ARRAY(int32_t, OUT_I32, jintArray, int[], jint, GetIntArrayElements,
               ReleaseIntArrayElements, 0)
SWB_JAVA_ARRAY(int64_t, OUT_I64, jlongArray, long[], jlong, GetLongArrayElements,
               ReleaseLongArrayElements, 0)

/* C enums as plain int constants: the thin layer has its own Java enums. */
%include <enumtypeunsafe.swg>
%javaconst(1);
